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
-- Every sum in this file runs over a whole-partition window frame in a fixed order, then a
-- GROUP BY picks one copy: rows leave a join or GROUP BY in an order that varies between runs, and
-- so would the last bit of a plain sum(). (A list aggregate with ORDER BY fixes the order too,
-- but keeps every group's list in memory: it ran out of a 4 GB limit at 100M rollouts, where
-- windows spill to disk.)
WITH threshold AS (
    SELECT coalesce(CAST($success_threshold AS DOUBLE), max(reward) FILTER (WHERE verified)) AS value
    FROM tilted
),
joined AS (
    SELECT
        tilted.prompt_id,
        tilted.sample_idx,
        tilted.reward,
        tilted.log_tilt,
        weights.log_weight,
        tilted.verified AND tilted.reward >= (SELECT value FROM threshold) AS success
    FROM tilted JOIN weights USING (prompt_id, sample_idx)
),
with_maxima AS (
    SELECT
        *,
        max(log_tilt) OVER prompt AS max_log_tilt,
        max(log_weight) OVER prompt AS max_log_weight
    FROM joined
    WINDOW prompt AS (PARTITION BY prompt_id)
),
with_sums AS (
    -- Sums of w / max(w), so weights far below 1e-154 (global or unnormalised schemes at tiny
    -- beta) keep their ESS instead of squaring to 0.
    SELECT
        prompt_id,
        max_log_tilt,
        max_log_weight,
        success,
        sum(reward) OVER prompt_in_order AS reward_sum,
        sum(exp(log_tilt - max_log_tilt)) OVER prompt_in_order AS scaled_tilt_sum,
        sum(exp(log_weight - max_log_weight)) OVER prompt_in_order AS scaled_sum,
        sum(exp(2 * (log_weight - max_log_weight))) OVER prompt_in_order AS scaled_square_sum,
        sum(CASE WHEN success THEN exp(log_weight - max_log_weight) ELSE 0 END)
            OVER prompt_in_order AS scaled_success_sum
    FROM with_maxima
    WINDOW prompt_in_order AS (
        PARTITION BY prompt_id ORDER BY sample_idx
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
per_prompt AS (
    SELECT
        prompt_id,
        count(*) AS n,
        any_value(reward_sum) / count(*) AS mean_reward,
        any_value(max_log_tilt) + ln(any_value(scaled_tilt_sum)) - ln(count(*)) AS log_z,
        coalesce(bool_or(success), false) AS covered,
        any_value(max_log_weight) AS max_log_weight,
        any_value(scaled_sum) AS scaled_sum,
        any_value(scaled_square_sum) AS scaled_square_sum,
        any_value(scaled_success_sum) AS scaled_success_sum
    FROM with_sums
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
distinct_with_sums AS (
    -- In ascending order of the terms: distinct responses have no index to order them by, and
    -- equal terms add up the same whichever comes first.
    SELECT
        prompt_id,
        max_log_unnormalised_target,
        sum(exp(log_unnormalised_target - max_log_unnormalised_target)) OVER (
            PARTITION BY prompt_id ORDER BY log_unnormalised_target
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS scaled_mass
    FROM distinct_with_maxima
),
support AS (
    SELECT
        prompt_id,
        count(*) AS distinct_responses,
        any_value(max_log_unnormalised_target) + ln(any_value(scaled_mass)) AS log_unnormalised_mass
    FROM distinct_with_sums
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
FROM per_prompt
JOIN support USING (prompt_id)
ORDER BY prompt_id;
