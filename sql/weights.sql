-- Weights of the chosen scheme (sql/log_tilt.sql), normalised in log space: exp() only ever
-- sees a log-weight minus its maximum, so beta down to 1e-4 cannot overflow.
--   prompt:  log w_i = s_i - logsumexp_{j in x}(s_j) + log N_x   (weights average 1 per prompt)
--   global:  log w_i = s_i - logsumexp_all(s_j) + log N_total    (weights average 1 overall)
--   none:    log w_i = s_i
-- Tables used: tilted. One row per (prompt_id, sample_idx).
--
-- Sums are exact_sum() (sql/exact_sum_macro.sql; docs/DESIGN.md, "Exact sums"): every term
-- exp(s - max) lies in [0, 1] and the largest is 1, so the sum has the same bits in any row
-- order and with any number of threads. A term below 2^-97 (it adds nothing to a sum >= 1 in
-- float64) counts as 0.
WITH totals AS (
    SELECT max(scheme_log_weight) AS global_max, count(*) AS n_total FROM tilted
),
global_sum AS (
    -- Only the 'global' normalisation reads it (the WHERE leaves nothing to sum otherwise).
    SELECT exact_sum(exp(scheme_log_weight - totals.global_max)) AS scaled_total
    FROM tilted, totals
    WHERE normalisation = 'global'
),
prompt_maxima AS (
    SELECT prompt_id, max(scheme_log_weight) AS prompt_max, count(*) AS n
    FROM tilted
    GROUP BY prompt_id
),
prompt_sums AS (
    -- A prompt whose every log-weight is -inf (or NaN) adds 0 and gets NaN weights, which the
    -- stage then reports.
    SELECT
        prompt_id,
        exact_sum(CASE WHEN isfinite(prompt_max) AND NOT isnan(scheme_log_weight)
                       THEN exp(scheme_log_weight - prompt_max) ELSE 0 END) AS scaled_prompt_sum
    FROM tilted JOIN prompt_maxima USING (prompt_id)
    WHERE normalisation = 'prompt'
    GROUP BY prompt_id
),
normalised AS (
    SELECT
        *,
        CASE normalisation
            WHEN 'prompt' THEN scheme_log_weight - prompt_max - ln(scaled_prompt_sum) + ln(n)
            WHEN 'global' THEN scheme_log_weight - global_max
                - ln((SELECT scaled_total FROM global_sum)) + ln(n_total)
            ELSE scheme_log_weight
        END AS log_weight
    FROM tilted
    CROSS JOIN totals
    JOIN prompt_maxima USING (prompt_id)
    LEFT JOIN prompt_sums USING (prompt_id)
)
SELECT prompt_id, sample_idx, reward, log_weight, exp(log_weight) AS weight
FROM normalised
ORDER BY prompt_id, sample_idx;
