-- Per pooled rollout of a round that replays earlier rounds' samples (docs/DESIGN.md, "Replay:
-- earlier rounds' samples, by multiple importance sampling"): the bolt scheme's log-weight
-- toward the round's target, over the balance-heuristic mixture of the samplers that drew the
-- prompt's pool, in the columns sql/log_tilt.sql gives (sql/weights.sql normalises them):
--   log m(y|x)        = logsumexp_j(log n_j(x) + log q_j(y|x)) - log n(x)
--   scheme_log_weight = eta*r + alpha*log pi_ref + (1-alpha)*log q_k - log m   (per prompt)
--   log_tilt          = r/beta + log pi_ref - log m
-- n_j(x) counts the pooled samples of x that sampler j drew (rollouts.round), n(x) their sum.
-- Sums are exact_sum() of exp(term - max term) (sql/exact_sum_macro.sql).
-- Parameters: $beta > 0, $eta (NULL: 1/beta), $alpha in [0, 1], $current_round (k).
-- Views used: rollouts (pooled, unique (prompt_id, sample_idx); `round` names the sampler that
--   drew the row), rewards, pool_logprobs (prompt_id, sample_idx, round, logprob): log q_round
--   of the row's response, for every sampler of its prompt's pool (stages/replay.py checks).
WITH counts AS (
    SELECT prompt_id, round, count(*) AS n_j FROM rollouts GROUP BY prompt_id, round
),
totals AS (
    SELECT prompt_id, sum(n_j) AS n FROM counts GROUP BY prompt_id
),
terms AS (
    SELECT pool_logprobs.prompt_id, pool_logprobs.sample_idx,
           ln(counts.n_j) + pool_logprobs.logprob AS term
    FROM pool_logprobs JOIN counts USING (prompt_id, round)
),
term_maxima AS (
    SELECT prompt_id, sample_idx, max(term) AS top FROM terms GROUP BY prompt_id, sample_idx
),
mixture AS (
    SELECT prompt_id, sample_idx,
           any_value(top) + ln(exact_sum(exp(term - top))) - ln(any_value(n)) AS log_mixture
    FROM terms JOIN term_maxima USING (prompt_id, sample_idx) JOIN totals USING (prompt_id)
    GROUP BY prompt_id, sample_idx
),
current_sampler AS (
    SELECT prompt_id, sample_idx, logprob AS current_logprob
    FROM pool_logprobs WHERE round = $current_round
)
SELECT
    rewards.prompt_id,
    rewards.sample_idx,
    rewards.reward,
    rewards.error IS NULL AS verified,
    rollouts.response_token_ids,
    rollouts.reference_logprob,
    rewards.reward / $beta + rollouts.reference_logprob - log_mixture AS log_tilt,
    CASE WHEN $eta IS NULL THEN rewards.reward / $beta
         ELSE rewards.reward * CAST($eta AS DOUBLE) END
        + CAST($alpha AS DOUBLE) * rollouts.reference_logprob
        + (1 - CAST($alpha AS DOUBLE)) * current_logprob
        - log_mixture AS scheme_log_weight,
    'prompt' AS normalisation
FROM rewards
JOIN rollouts USING (prompt_id, sample_idx)
JOIN mixture USING (prompt_id, sample_idx)
JOIN current_sampler USING (prompt_id, sample_idx);
