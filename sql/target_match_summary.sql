-- E1 per split: medians of the log-odds shifts, mean distance to the target and projection gap.
-- Tables used: per_prompt (sql/target_match.sql).
SELECT
    split,
    count(*) AS prompts,
    count(shift_vs_stored) AS prompts_with_mixed_samples,
    median(shift_vs_stored) AS median_shift_vs_stored,
    median(shift_vs_ref) AS median_shift_vs_ref,
    avg(p_ref) AS mean_p_ref,
    avg(p_theta) AS mean_p_theta,
    avg(p_star) AS mean_p_star,
    avg(target_error) AS mean_target_error,
    avg(projection_gap) AS mean_projection_gap
FROM per_prompt
GROUP BY split
ORDER BY split;
