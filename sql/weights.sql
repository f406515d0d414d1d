-- Weights of the chosen scheme (sql/log_tilt.sql), normalised in log space: exp() only ever
-- sees a log-weight minus its maximum, so beta down to 1e-4 cannot overflow.
--   prompt:  log w_i = s_i - logsumexp_{j in x}(s_j) + log N_x   (weights average 1 per prompt)
--   global:  log w_i = s_i - logsumexp_all(s_j) + log N_total    (weights average 1 overall)
--   none:    log w_i = s_i
-- Tables used: tilted. One row per (prompt_id, sample_idx).
--
-- Exact sums (docs/DESIGN.md, "Exact sums"): every term exp(s - max) lies in [0, 1] and the
-- largest is 1, so each is added as the integer round(term * 2^96) in a HUGEINT. Integer sums
-- are exact, hence the same bits in any order and with any number of threads (a float sum()
-- changes its last bit with the order rows arrive in), and need neither a sort nor a list per
-- group. A term below 2^-96 (it adds nothing to a sum >= 1 in float64) counts as 0.
WITH totals AS (
    SELECT max(scheme_log_weight) AS global_max, count(*) AS n_total FROM tilted
),
global_sum AS (
    -- Only the 'global' normalisation reads it (the WHERE leaves nothing to sum otherwise).
    SELECT CAST(sum(CAST(exp(scheme_log_weight - totals.global_max) * pow(2, 96) AS HUGEINT))
                AS DOUBLE) / pow(2, 96) AS scaled_total
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
        CAST(sum(CASE WHEN isfinite(prompt_max) AND NOT isnan(scheme_log_weight)
                      THEN CAST(exp(scheme_log_weight - prompt_max) * pow(2, 96) AS HUGEINT)
                      ELSE 0 END) AS DOUBLE) / pow(2, 96) AS scaled_prompt_sum
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
