-- Weights of the chosen scheme (sql/log_tilt.sql), normalised in log space: exp() only ever
-- sees a log-weight minus its maximum, so beta down to 1e-4 cannot overflow.
--   prompt:  log w_i = s_i - logsumexp_{j in x}(s_j) + log N_x   (weights average 1 per prompt)
--   global:  log w_i = s_i - logsumexp_all(s_j) + log N_total    (weights average 1 overall)
--   none:    log w_i = s_i
-- Tables used: tilted. One row per (prompt_id, sample_idx).
WITH maxima AS (
    SELECT
        *,
        max(scheme_log_weight) OVER prompt AS prompt_max,
        count(*) OVER prompt AS n,
        max(scheme_log_weight) OVER () AS global_max,
        count(*) OVER () AS n_total
    FROM tilted
    WINDOW prompt AS (PARTITION BY prompt_id)
),
normalised AS (
    SELECT
        *,
        -- The sums run over rows in a fixed order (whole-partition frames ordered by sample):
        -- rows arrive in an order that can vary between runs, and so would the last bit.
        CASE normalisation
            WHEN 'prompt' THEN scheme_log_weight - prompt_max
                - ln(sum(exp(scheme_log_weight - prompt_max)) OVER (
                    PARTITION BY prompt_id ORDER BY sample_idx
                    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
                + ln(n)
            WHEN 'global' THEN scheme_log_weight - global_max
                - ln(sum(exp(scheme_log_weight - global_max)) OVER (
                    ORDER BY prompt_id, sample_idx
                    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
                + ln(n_total)
            ELSE scheme_log_weight
        END AS log_weight
    FROM maxima
)
SELECT prompt_id, sample_idx, reward, log_weight, exp(log_weight) AS weight
FROM normalised
ORDER BY prompt_id, sample_idx;
