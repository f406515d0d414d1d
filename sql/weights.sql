-- BOLT weights (DESIGN.md section 1), in log space: exp() only ever sees l_i - max_j l_j <= 0.
--   log w_i = l_i - logsumexp_j(l_j) + log N      (weights average exactly 1 per prompt)
-- Tables used: tilted (sql/log_tilt.sql). One row per (prompt_id, sample_idx).
WITH per_prompt AS (
    SELECT
        *,
        max(log_tilt) OVER prompt AS max_log_tilt,
        count(*) OVER prompt AS n
    FROM tilted
    WINDOW prompt AS (PARTITION BY prompt_id)
),
normalised AS (
    SELECT
        *,
        log_tilt - max_log_tilt
            - ln(sum(exp(log_tilt - max_log_tilt)) OVER (PARTITION BY prompt_id))
            + ln(n) AS log_weight
    FROM per_prompt
)
SELECT prompt_id, sample_idx, reward, log_weight, exp(log_weight) AS weight
FROM normalised
ORDER BY prompt_id, sample_idx;
