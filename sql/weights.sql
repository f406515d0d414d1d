-- Weights of the chosen scheme (sql/log_tilt.sql), normalised in log space: exp() only ever
-- sees a log-weight minus its maximum, so beta down to 1e-4 cannot overflow.
--   prompt:  log w_i = s_i - logsumexp_{j in x}(s_j) + log N_x   (weights average 1 per prompt)
--   global:  log w_i = s_i - logsumexp_all(s_j) + log N_total    (weights average 1 overall)
--   none:    log w_i = s_i
-- Tables used: tilted. One row per (prompt_id, sample_idx).
WITH totals AS (
    SELECT max(scheme_log_weight) AS global_max, count(*) AS n_total FROM tilted
),
global_sum AS (
    -- Only the 'global' normalisation reads it (the WHERE leaves nothing to sum otherwise).
    -- An aggregate, not a window over all rows: such a window holds the whole table in one
    -- partition, in memory, and ran out of a 4 GB limit at 100M rollouts. Summed in a fixed
    -- order (the rows arrive in an order that can vary between runs, and so would the last bit).
    SELECT list_sum(list(exp(scheme_log_weight - totals.global_max) ORDER BY prompt_id, sample_idx))
        AS scaled_total
    FROM tilted, totals
    WHERE normalisation = 'global'
),
maxima AS (
    -- Only the columns needed: a window holds every column it passes on (the token lists too).
    SELECT
        prompt_id,
        sample_idx,
        reward,
        scheme_log_weight,
        normalisation,
        max(scheme_log_weight) OVER prompt AS prompt_max,
        count(*) OVER prompt AS n,
        totals.global_max,
        totals.n_total
    FROM tilted, totals
    WINDOW prompt AS (PARTITION BY prompt_id)
),
normalised AS (
    SELECT
        *,
        -- The per-prompt sum runs over the rows in a fixed order too (a whole-partition frame
        -- ordered by sample).
        CASE normalisation
            WHEN 'prompt' THEN scheme_log_weight - prompt_max
                - ln(sum(exp(scheme_log_weight - prompt_max)) OVER (
                    PARTITION BY prompt_id ORDER BY sample_idx
                    ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
                + ln(n)
            WHEN 'global' THEN scheme_log_weight - global_max
                - ln((SELECT scaled_total FROM global_sum)) + ln(n_total)
            ELSE scheme_log_weight
        END AS log_weight
    FROM maxima
)
SELECT prompt_id, sample_idx, reward, log_weight, exp(log_weight) AS weight
FROM normalised
ORDER BY prompt_id, sample_idx;
