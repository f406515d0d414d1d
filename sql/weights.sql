-- Weights of the chosen scheme (sql/log_tilt.sql), normalised in log space: exp() only ever
-- sees a log-weight minus its maximum, so beta down to 1e-4 cannot overflow.
--   prompt:  log w_i = s_i - logsumexp_{j in x}(s_j) + log N_x   (weights average 1 per prompt)
--   global:  log w_i = s_i - logsumexp_all(s_j) + log N_total    (weights average 1 overall)
--   none:    log w_i = s_i
-- Zero-information groups: a prompt whose log-weights are all equal (every reward alike, sampled
-- from pi_ref) adds only SFT on the sampler's own samples, a gradient of expectation zero at
-- the start of the fit. It is kept with probability $keep and, when kept, weighted 1/$keep,
-- so the expected loss is the full table's ($keep = 1 keeps every row with the same bits;
-- $keep = 0 drops them all, which is biased). The draw is u(x) = the first 52 bits of
-- md5('$keep_seed:' || prompt_id) over 2^52, kept when u(x) < $keep. The sft scheme (every
-- weight 1, every group flat) keeps every row: it is the baseline that refits the sampler on the
-- whole table, and subsampling it would make it a different baseline.
-- Parameters: $keep in [0, 1], $keep_seed, $scheme.
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
),
prompt_groups AS (
    SELECT
        prompt_id,
        max(log_weight) = min(log_weight) AND $scheme <> 'sft' AS zero_information,
        CAST(('0x' || substr(md5(CAST($keep_seed AS VARCHAR) || ':' || prompt_id), 1, 13)) AS BIGINT)
            / 4503599627370496.0 AS keep_draw
    FROM normalised
    GROUP BY prompt_id
),
subsampled AS (
    SELECT
        normalised.*,
        NOT zero_information OR keep_draw < CAST($keep AS DOUBLE) AS kept,
        zero_information AND CAST($keep AS DOUBLE) < 1 AS reweighted
    FROM normalised JOIN prompt_groups USING (prompt_id)
),
final AS (
    SELECT
        prompt_id, sample_idx, reward, kept,
        CASE WHEN kept AND reweighted THEN log_weight - ln(CAST($keep AS DOUBLE)) ELSE log_weight END
            AS log_weight
    FROM subsampled
)
SELECT prompt_id, sample_idx, reward, log_weight, exp(log_weight) AS weight, kept
FROM final
ORDER BY prompt_id, sample_idx;
