-- Per-prompt statistics and diagnostics of the weighted rollouts (docs/DESIGN.md section 1).
--   log_z          log Zhat(x) = logsumexp_j(l_j) - log N   (Boltzmann tilt l, any scheme)
--   ess            (sum_i w_i)^2 / sum_i w_i^2 of the scheme's weights, from log-weights;
--                  ess_fraction = ESS/N (0 when every weight is 0: rft on a prompt with no success)
--   covered        at least one verified response with reward >= the success threshold
--   target_success estimated success rate of the scheme's fitted policy on this prompt:
--                  sum over successes of w_i / sum_i w_i (= p* for bolt, as N grows)
--   A success is a verified response (tilted.verified) with reward >= the threshold.
--   distinct_responses, support_mass = pi*(S_N|x) = sum over DISTINCT stored responses y of
--                  exp(log pi_ref(y|x) + r(x,y)/beta - log Zhat(x)), computed in log space,
--   support_price  beta * log(1 / pi*(S_N|x)): the part of the one-shot gap epochs cannot remove
-- Parameters: $beta, $success_threshold (NULL: the top verified reward of the whole table).
-- Tables used: tilted (sql/log_tilt.sql), weights (sql/weights.sql).
WITH threshold AS (
    SELECT coalesce(CAST($success_threshold AS DOUBLE), max(reward) FILTER (WHERE verified)) AS value
    FROM tilted
),
with_maxima AS (
    SELECT *, max(log_tilt) OVER (PARTITION BY prompt_id) AS max_log_tilt FROM tilted
),
partition_function AS (
    SELECT
        prompt_id,
        count(*) AS n,
        avg(reward) AS mean_reward,
        any_value(max_log_tilt)
            + ln(list_sum(list(exp(log_tilt - max_log_tilt) ORDER BY sample_idx)))
            - ln(count(*)) AS log_z,
        coalesce(max(reward) FILTER (WHERE verified) >= (SELECT value FROM threshold), false)
            AS covered
    FROM with_maxima
    GROUP BY prompt_id
),
distinct_responses AS (
    -- A response sampled twice was scored twice, at different batch positions, so its
    -- log-probs may differ in the last bits: min() picks one the same way every run.
    SELECT
        prompt_id,
        min(reference_logprob) + min(reward) / $beta AS log_unnormalised_target
    FROM tilted
    GROUP BY prompt_id, response_token_ids
),
distinct_with_maxima AS (
    SELECT
        *,
        max(log_unnormalised_target) OVER (PARTITION BY prompt_id) AS max_log_unnormalised_target
    FROM distinct_responses
),
support AS (
    -- Every sum in this file runs in a fixed order (here ascending terms): rows leave a
    -- GROUP BY or window in an order that varies between runs, and so would the last bit.
    SELECT
        prompt_id,
        count(*) AS distinct_responses,
        any_value(max_log_unnormalised_target)
            + ln(list_sum(list(exp(log_unnormalised_target - max_log_unnormalised_target)
                               ORDER BY log_unnormalised_target)))
            AS log_unnormalised_mass
    FROM distinct_with_maxima
    GROUP BY prompt_id
),
weight_maxima AS (
    SELECT weights.*, tilted.verified,
           max(weights.log_weight) OVER (PARTITION BY weights.prompt_id) AS max_log_weight
    FROM weights JOIN tilted USING (prompt_id, sample_idx)
),
weighted AS (
    -- Sums of w / max(w), so weights far below 1e-154 (global or unnormalised schemes at tiny
    -- beta) keep their ESS instead of squaring to 0.
    SELECT
        prompt_id,
        any_value(max_log_weight) AS max_log_weight,
        list_sum(list(exp(log_weight - max_log_weight) ORDER BY sample_idx)) AS scaled_sum,
        list_sum(list(exp(2 * (log_weight - max_log_weight)) ORDER BY sample_idx))
            AS scaled_square_sum,
        list_sum(list(CASE WHEN verified AND reward >= (SELECT value FROM threshold)
                           THEN exp(log_weight - max_log_weight) ELSE 0 END ORDER BY sample_idx))
            AS scaled_success_sum
    FROM weight_maxima
    GROUP BY prompt_id
)
SELECT
    prompt_id,
    n,
    mean_reward,
    log_z,
    CASE WHEN isinf(max_log_weight) THEN 0 ELSE pow(scaled_sum, 2) / scaled_square_sum END AS ess,
    CASE WHEN isinf(max_log_weight) THEN 0 ELSE pow(scaled_sum, 2) / scaled_square_sum END / n
        AS ess_fraction,
    covered,
    CASE WHEN NOT isinf(max_log_weight) THEN scaled_success_sum / scaled_sum END AS target_success,
    distinct_responses,
    log_unnormalised_mass - log_z AS log_support_mass,
    exp(log_unnormalised_mass - log_z) AS support_mass,
    $beta * (log_z - log_unnormalised_mass) AS support_price
FROM partition_function
JOIN support USING (prompt_id)
JOIN weighted USING (prompt_id)
ORDER BY prompt_id;
