-- Per-prompt statistics and diagnostics of the weighted rollouts (docs/DESIGN.md section 1).
--   log_z          log Zhat(x) = logsumexp_j(l_j) - log N   (Boltzmann tilt l, any scheme)
--   ess            (sum_i w_i)^2 / sum_i w_i^2 of the scheme's weights, from log-weights;
--                  ess_fraction = ESS/N (0 when every weight is 0: rft on a prompt with no success)
--   covered        at least one success among the prompt's responses
--   rewarded       verified responses with a reward above 0
--   informative    the prompt's weights are not all equal (a zero-information group's are:
--                  sql/weights.sql)
--   target_success estimated success rate of the scheme's fitted policy on this prompt:
--                  sum over successes of w_i / sum_i w_i (= p* for bolt, as N grows)
--   A success is a verified response (tilted.verified) with reward >= $success_threshold; with
--   no threshold, one with the top verified reward of the whole table, if that is above 0 (a
--   table where nothing is rewarded has no success, not every response a success).
--   distinct_responses, support_mass = pi*(S_N|x) = sum over DISTINCT stored responses y of
--                  exp(log pi_ref(y|x) + r(x,y)/beta - log Zhat(x)), computed in log space,
--   support_price  beta * log(1 / pi*(S_N|x)): the part of the one-shot gap epochs cannot remove
-- Parameters: $beta, $success_threshold (NULL: the top verified reward of the whole table).
-- Tables used: tilted (sql/log_tilt.sql), weights (sql/weights.sql).
-- Every sum here is exact_sum() (sql/exact_sum_macro.sql; docs/DESIGN.md, "Exact sums"): its
-- terms are scaled into [-1, 1] with the largest magnitude 1 (exp(x - max x), or a reward over
-- a power of two at least as large as the prompt's largest). The same bits in any row order
-- and with any number of threads, with no sort and no list per group.
WITH threshold AS (
    SELECT coalesce(CAST($success_threshold AS DOUBLE), max(reward) FILTER (WHERE verified)) AS value,
           CAST($success_threshold AS DOUBLE) IS NULL AS from_table
    FROM tilted
),
joined AS (
    SELECT
        tilted.prompt_id,
        tilted.reward,
        tilted.log_tilt,
        weights.log_weight,
        tilted.verified AND tilted.reward >= (SELECT value FROM threshold)
            AND (tilted.reward > 0 OR NOT (SELECT from_table FROM threshold)) AS success,
        tilted.verified AND tilted.reward > 0 AS rewarded
    FROM tilted JOIN weights USING (prompt_id, sample_idx)
),
maxima AS (
    SELECT
        prompt_id,
        count(*) AS n,
        max(log_tilt) AS max_log_tilt,
        max(log_weight) AS max_log_weight,
        max(log_weight) FILTER (WHERE success) AS max_success_log_weight,
        max(log_weight) > min(log_weight) AS informative,
        count(*) FILTER (WHERE rewarded) AS rewarded_count,
        -- 2^k >= the largest |reward| (at least 1), so reward / 2^k is exact and in [-1, 1]
        pow(2, greatest(0, ceil(log2(max(abs(reward)))))) AS reward_scale,
        coalesce(bool_or(success), false) AS covered
    FROM joined
    GROUP BY prompt_id
),
sums AS (
    -- A term that is not a number in [-1, 1] (a prompt whose every weight is 0: max -inf)
    -- adds 0; the CASE below reports such prompts as the float sums did.
    SELECT
        prompt_id,
        any_value(n) AS n,
        any_value(max_log_tilt) AS max_log_tilt,
        any_value(max_log_weight) AS max_log_weight,
        any_value(max_success_log_weight) AS max_success_log_weight,
        any_value(covered) AS covered,
        any_value(informative) AS informative,
        any_value(rewarded_count) AS rewarded,
        exact_sum(reward / reward_scale) * any_value(reward_scale) AS reward_sum,
        exact_sum(exp(log_tilt - max_log_tilt)) AS scaled_tilt_sum,
        exact_sum(CASE WHEN isfinite(max_log_weight) THEN exp(log_weight - max_log_weight)
                       ELSE 0 END) AS scaled_sum,
        exact_sum(CASE WHEN isfinite(max_log_weight) THEN exp(2 * (log_weight - max_log_weight))
                       ELSE 0 END) AS scaled_square_sum,
        -- successes' weights over their own maximum: relative to the prompt's largest weight
        -- they can be far below 2^-96 (an importance ratio of e^60), and keep their digits
        exact_sum(CASE WHEN success AND isfinite(max_success_log_weight)
                       THEN exp(log_weight - max_success_log_weight) ELSE 0 END)
            AS scaled_success_sum
    FROM joined JOIN maxima USING (prompt_id)
    GROUP BY prompt_id
),
distinct_responses AS MATERIALIZED (
    -- A response sampled twice was scored twice, at different batch positions, so its
    -- log-probs may differ in the last bits: min() picks one the same way every run.
    SELECT
        prompt_id,
        min(reference_logprob) + min(reward) / $beta AS log_unnormalised_target
    FROM tilted
    GROUP BY prompt_id, response_token_ids
),
distinct_maxima AS (
    SELECT prompt_id, max(log_unnormalised_target) AS max_log_unnormalised_target
    FROM distinct_responses
    GROUP BY prompt_id
),
support AS (
    SELECT
        prompt_id,
        count(*) AS distinct_responses,
        any_value(max_log_unnormalised_target)
            + ln(exact_sum(exp(log_unnormalised_target - max_log_unnormalised_target)))
            AS log_unnormalised_mass
    FROM distinct_responses JOIN distinct_maxima USING (prompt_id)
    GROUP BY prompt_id
),
partition_function AS (
    SELECT *, max_log_tilt + ln(scaled_tilt_sum) - ln(n) AS log_z FROM sums
)
SELECT
    prompt_id,
    n,
    reward_sum / n AS mean_reward,
    log_z,
    CASE WHEN isinf(max_log_weight) THEN 0 ELSE pow(scaled_sum, 2) / scaled_square_sum END AS ess,
    CASE WHEN isinf(max_log_weight) THEN 0 ELSE pow(scaled_sum, 2) / scaled_square_sum END / n
        AS ess_fraction,
    covered,
    rewarded,
    coalesce(informative, false) AS informative,
    CASE WHEN NOT isinf(max_log_weight) THEN
        coalesce(exp(max_success_log_weight - max_log_weight) * scaled_success_sum / scaled_sum, 0)
    END AS target_success,
    distinct_responses,
    log_unnormalised_mass - log_z AS log_support_mass,
    exp(log_unnormalised_mass - log_z) AS support_mass,
    $beta * (log_z - log_unnormalised_mass) AS support_price
FROM partition_function
JOIN support USING (prompt_id)
ORDER BY prompt_id;
