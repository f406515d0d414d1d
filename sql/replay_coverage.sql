-- The pooled rollouts whose log-prob is missing under a sampler of their prompt's pool
-- (sql/replay_tilt.sql needs every one): the count, and the first such (prompt, sample, round).
-- Parameters: $current_round. Views used: rollouts, pool_logprobs.
WITH needed AS (
    SELECT rollouts.prompt_id, rollouts.sample_idx, samplers.round
    FROM rollouts
    JOIN (SELECT DISTINCT prompt_id, round FROM rollouts
          UNION SELECT DISTINCT prompt_id, CAST($current_round AS BIGINT) FROM rollouts) AS samplers
        USING (prompt_id)
),
missing AS (
    SELECT needed.* FROM needed
    ANTI JOIN pool_logprobs USING (prompt_id, sample_idx, round)
)
SELECT count(*), min((prompt_id, sample_idx, round)) FROM missing;
