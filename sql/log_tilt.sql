-- The log-tilt l_i of every scored rollout, before per-prompt normalisation (DESIGN.md s.1):
--   l_i = r_i/beta + log pi_ref(y_i|x) - log q(y_i|x)
-- The importance term is 0 when the sampler q is pi_ref itself (the stored log-probs are equal).
-- Parameters: $beta > 0. Views used: rollouts, rewards. Materialised as table `tilted`.
SELECT
    rewards.prompt_id,
    rewards.sample_idx,
    rewards.reward,
    rewards.reward / $beta
        + (rollouts.reference_logprob - rollouts.sampler_logprob) AS log_tilt
FROM rewards
JOIN rollouts USING (prompt_id, sample_idx);
