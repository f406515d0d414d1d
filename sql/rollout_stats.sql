-- Sampling and scoring statistics of a round's rollouts, logged beside the weights.
-- Tables used: rollouts, rewards.
SELECT
    count(*) AS rollouts,
    avg(rollouts.num_tokens) AS mean_response_tokens,
    avg(CAST(rollouts.finish_reason = 'stop' AS DOUBLE)) AS stop_fraction,
    avg(rewards.reward) AS train_mean_reward,
    count(rewards.error) AS verifier_errors
FROM rollouts
JOIN rewards USING (prompt_id, sample_idx);
