-- Per scored rollout, before any normalisation (docs/DESIGN.md section 1):
--   log_tilt          the Boltzmann log-tilt  l_i = r_i/beta + log pi_ref(y_i|x) - log q(y_i|x)
--                     (the importance term is 0 when the sampler q is pi_ref itself);
--                     it defines log Zhat, pi* and the diagnostics whatever the scheme
--   scheme_log_weight the chosen scheme's log-weight, one expression per scheme:
--       bolt              eta*r_i + alpha*(log pi_ref - log q) normalised per prompt; with the
--                         defaults eta = 1/beta, alpha = 1 it is l_i (one exact step to pi*);
--                         a refreshed round k (q = pi_k) is KL mirror descent with step eta
--                         and anchor alpha: pi_{k+1} ∝ pi_k^(1-alpha) pi_ref^alpha exp(eta r)
--       boltzmann_global  r_i/beta                            normalised by one global mean
--       rft               0 if r_i >= $rft_threshold, else -inf (rejection-sampling FT)
--       reward            log r_i (r_i >= 0)
--       sft               0 (plain SFT: refits q)
--   normalisation     'prompt', 'global' or 'none' (sql/weights.sql applies it)
--   verified          the verifier scored the response (rewards.error is NULL): a response it
--                     could not score carries the fallback reward and never counts as a success
-- Parameters: $beta > 0, $scheme, $rft_threshold, $eta (NULL: 1/beta), $alpha in [0, 1].
-- Views used: rollouts, rewards.
SELECT
    rewards.prompt_id,
    rewards.sample_idx,
    rewards.reward,
    rewards.error IS NULL AS verified,
    rollouts.response_token_ids,
    rollouts.reference_logprob,
    rewards.reward / $beta
        + (rollouts.reference_logprob - rollouts.sampler_logprob) AS log_tilt,
    CASE $scheme
        WHEN 'bolt' THEN
            CASE WHEN $eta IS NULL THEN rewards.reward / $beta
                 ELSE rewards.reward * CAST($eta AS DOUBLE) END
            + CAST($alpha AS DOUBLE) * (rollouts.reference_logprob - rollouts.sampler_logprob)
        WHEN 'boltzmann_global' THEN rewards.reward / $beta
        WHEN 'rft' THEN CASE WHEN rewards.reward >= $rft_threshold
                             THEN 0.0 ELSE CAST('-inf' AS DOUBLE) END
        WHEN 'reward' THEN CASE WHEN rewards.reward > 0
                                THEN ln(rewards.reward) ELSE CAST('-inf' AS DOUBLE) END
        WHEN 'sft' THEN 0.0
    END AS scheme_log_weight,
    CASE $scheme
        WHEN 'bolt' THEN 'prompt'
        WHEN 'boltzmann_global' THEN 'global'
        ELSE 'none'
    END AS normalisation
FROM rewards
JOIN rollouts USING (prompt_id, sample_idx);
