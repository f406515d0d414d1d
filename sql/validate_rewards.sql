-- Rows of rewards.parquet whose reward no scheme can use (at most 5, first first): missing,
-- NaN or infinite, beyond +-$max_abs_reward (r/beta must stay a finite float), or negative
-- under the 'reward' scheme (whose log-weight is log r).
-- Parameters: $scheme, $max_abs_reward. Views used: rewards (with file_row_number, 0-based).
SELECT file_row_number + 1 AS row_number, prompt_id, sample_idx, reward
FROM rewards
WHERE reward IS NULL OR NOT isfinite(reward) OR abs(reward) > $max_abs_reward
   OR ($scheme = 'reward' AND reward < 0)
ORDER BY file_row_number
LIMIT 5;
