-- E1, one fitted policy measured against one beta's target, per prompt (both splits):
--   p_ref     pi_ref's exact success probability, p_theta the fitted policy's (one forward pass
--             each, bolt_tasks/answer_probability.py);
--   p_stored  success rate of the prompt's stored samples (training prompts only);
--   shift_vs_stored = logit(p_theta) - logit(p_stored), for 0 < p_stored < 1: the projection
--             itself, isolated from coverage; BOLT's exact fit of the stored samples gives 1/beta;
--   shift_vs_ref    = logit(p_theta) - logit(p_ref): what pi* asks for is 1/beta;
--   target_error    = |p_theta - p*(p_ref)| with p* from sql/target_macro.sql;
--   projection_gap  = KL(pi* || pi_theta) estimate (sql/projection_gap.sql).
-- Parameters: $beta, $success_threshold. Tables used: prompts, reference_probs, policy_probs,
-- stored (rewards of the training rollouts), gaps (prompt_id, projection_gap).
WITH stored_rates AS (
    SELECT prompt_id, avg(CAST(reward >= $success_threshold AS DOUBLE)) AS p_stored
    FROM stored
    GROUP BY prompt_id
),
joined AS (
    SELECT
        prompts.prompt_id,
        prompts.split,
        prompts.difficulty,
        ref.answer_probability AS p_ref,
        stored_rates.p_stored,
        pol.answer_probability AS p_theta,
        target_success_rate(ref.answer_probability, $beta) AS p_star,
        gaps.projection_gap
    FROM prompts
    JOIN reference_probs AS ref USING (prompt_id)
    JOIN policy_probs AS pol USING (prompt_id)
    LEFT JOIN stored_rates USING (prompt_id)
    LEFT JOIN gaps USING (prompt_id)
)
SELECT
    *,
    CASE WHEN p_stored > 0 AND p_stored < 1
         THEN (ln(p_theta) - ln(1 - p_theta)) - (ln(p_stored) - ln(1 - p_stored)) END
        AS shift_vs_stored,
    (ln(p_theta) - ln(1 - p_theta)) - (ln(p_ref) - ln(1 - p_ref)) AS shift_vs_ref,
    abs(p_theta - p_star) AS target_error
FROM joined
ORDER BY split, prompt_id;
