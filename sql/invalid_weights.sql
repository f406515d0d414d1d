-- Rollouts whose weight would train a NaN policy: a NaN log-weight or an infinite weight.
-- One row: how many, and the first of them by (prompt_id, sample_idx) (NULLs when none).
-- Tables used: weights (sql/weights.sql).
SELECT
    count(*) AS rollouts,
    arg_min(prompt_id, (prompt_id, sample_idx)) AS prompt_id,
    arg_min(sample_idx, (prompt_id, sample_idx)) AS sample_idx,
    arg_min(reward, (prompt_id, sample_idx)) AS reward
FROM weights
WHERE isnan(log_weight) OR NOT isfinite(weight);
