-- Per-prompt statistics of the weighted rollouts (DESIGN.md section 1):
--   log Zhat(x) = logsumexp_j(l_j) - log N   (= logsumexp_j(r_j/beta) - log N when q = pi_ref)
--   ESS(x)      = (sum_i w_i)^2 / sum_i w_i^2, in [1, N];  ess_fraction = ESS/N
--   covered     = at least one reward >= the success threshold
-- Parameters: $success_threshold (NULL: the top reward of the whole table).
-- Tables used: tilted (sql/log_tilt.sql), weights (sql/weights.sql).
WITH threshold AS (
    SELECT coalesce(CAST($success_threshold AS DOUBLE), max(reward)) AS value FROM tilted
),
prompt_max AS (
    SELECT prompt_id, max(log_tilt) AS max_log_tilt FROM tilted GROUP BY prompt_id
),
partition_function AS (
    SELECT
        prompt_id,
        count(*) AS n,
        avg(reward) AS mean_reward,
        any_value(max_log_tilt) + ln(sum(exp(log_tilt - max_log_tilt))) - ln(count(*)) AS log_z,
        max(reward) >= (SELECT value FROM threshold) AS covered
    FROM tilted
    JOIN prompt_max USING (prompt_id)
    GROUP BY prompt_id
),
effective_size AS (
    SELECT prompt_id, pow(sum(weight), 2) / sum(weight * weight) AS ess
    FROM weights
    GROUP BY prompt_id
)
SELECT prompt_id, n, mean_reward, log_z, ess, ess / n AS ess_fraction, covered
FROM partition_function
JOIN effective_size USING (prompt_id)
ORDER BY prompt_id;
