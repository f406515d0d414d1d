-- The projection gap KL(pi* || pi_theta) per prompt, by self-normalised importance sampling
-- over stored samples y_i ~ q (docs/DESIGN.md section 1). With the BOLT weights of those samples,
--   log pi*(y_i|x) = log q(y_i|x) + log w_i       (log w_i = l_i - log Zhat(x))
--   KL(x) = sum_i (w_i / N) * (log pi*(y_i|x) - log pi_theta(y_i|x))
-- Tables used: samples (sampler_logprob), weights (sql/weights.sql over the same samples),
-- policy_logprobs (prompt_id, sample_idx, policy_logprob).
SELECT
    weights.prompt_id,
    sum(weights.weight * (samples.sampler_logprob + weights.log_weight - policy_logprobs.policy_logprob))
        / count(*) AS projection_gap
FROM weights
JOIN samples USING (prompt_id, sample_idx)
JOIN policy_logprobs USING (prompt_id, sample_idx)
GROUP BY weights.prompt_id
ORDER BY weights.prompt_id;
