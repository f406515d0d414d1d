-- Per-prompt statistics and diagnostics of the weighted rollouts (DESIGN.md section 1).
--   log_z          log Zhat(x) = logsumexp_j(l_j) - log N   (Boltzmann tilt l, any scheme)
--   ess            (sum_i w_i)^2 / sum_i w_i^2 of the scheme's weights; ess_fraction = ESS/N
--                  (0 when every weight is 0, e.g. rft on a prompt with no success)
--   covered        at least one reward >= the success threshold
--   target_success estimated success rate of the scheme's fitted policy on this prompt:
--                  sum over successes of w_i / sum_i w_i (= p* for bolt, as N grows)
--   distinct_responses, support_mass = pi*(S_N|x) = sum over DISTINCT stored responses y of
--                  exp(log pi_ref(y|x) + r(x,y)/beta - log Zhat(x)), computed in log space,
--   support_price  beta * log(1 / pi*(S_N|x)): the part of the one-shot gap epochs cannot remove
-- Parameters: $beta, $success_threshold (NULL: the top reward of the whole table).
-- Tables used: tilted (sql/log_tilt.sql), weights (sql/weights.sql).
WITH threshold AS (
    SELECT coalesce(CAST($success_threshold AS DOUBLE), max(reward)) AS value FROM tilted
),
with_maxima AS (
    SELECT *, max(log_tilt) OVER (PARTITION BY prompt_id) AS max_log_tilt FROM tilted
),
partition_function AS (
    SELECT
        prompt_id,
        count(*) AS n,
        avg(reward) AS mean_reward,
        any_value(max_log_tilt) + ln(sum(exp(log_tilt - max_log_tilt))) - ln(count(*)) AS log_z,
        max(reward) >= (SELECT value FROM threshold) AS covered
    FROM with_maxima
    GROUP BY prompt_id
),
distinct_responses AS (
    SELECT
        prompt_id,
        any_value(reference_logprob) + any_value(reward) / $beta AS log_unnormalised_target
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
    SELECT
        prompt_id,
        count(*) AS distinct_responses,
        any_value(max_log_unnormalised_target)
            + ln(sum(exp(log_unnormalised_target - max_log_unnormalised_target)))
            AS log_unnormalised_mass
    FROM distinct_with_maxima
    GROUP BY prompt_id
),
weighted AS (
    SELECT
        weights.prompt_id,
        sum(weight) AS weight_sum,
        sum(weight * weight) AS weight_square_sum,
        sum(CASE WHEN weights.reward >= (SELECT value FROM threshold) THEN weight ELSE 0 END)
            AS success_weight
    FROM weights
    GROUP BY weights.prompt_id
)
SELECT
    prompt_id,
    n,
    mean_reward,
    log_z,
    CASE WHEN weight_square_sum > 0 THEN pow(weight_sum, 2) / weight_square_sum ELSE 0 END AS ess,
    CASE WHEN weight_square_sum > 0 THEN pow(weight_sum, 2) / weight_square_sum ELSE 0 END / n
        AS ess_fraction,
    covered,
    CASE WHEN weight_sum > 0 THEN success_weight / weight_sum END AS target_success,
    distinct_responses,
    log_unnormalised_mass - log_z AS log_support_mass,
    exp(log_unnormalised_mass - log_z) AS support_mass,
    $beta * (log_z - log_unnormalised_mass) AS support_price
FROM partition_function
JOIN support USING (prompt_id)
JOIN weighted USING (prompt_id)
ORDER BY prompt_id;
