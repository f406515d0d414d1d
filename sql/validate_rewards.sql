-- Rows of rewards.parquet whose reward is missing, NaN or infinite (at most 5, first first).
-- Views used: rewards (with file_row_number, 0-based).
SELECT file_row_number + 1 AS row_number, prompt_id, sample_idx, reward
FROM rewards
WHERE reward IS NULL OR NOT isfinite(reward)
ORDER BY file_row_number
LIMIT 5;
