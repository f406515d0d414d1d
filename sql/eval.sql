-- Held-out evaluation, one row per prompt: pi_ref beside the fitted policy, and the policy's
-- distance to its exact target p* (target_success_rate from sql/target_macro.sql).
-- Parameters: $beta. Tables used: reference_eval, policy_eval (bolt_tasks/evaluation.py),
-- projection_gap (sql/projection_gap.sql).
SELECT
    ref.prompt_id,
    ref.difficulty,
    ref.samples,
    ref.success_rate AS reference_success_rate,
    pol.success_rate AS policy_success_rate,
    ref.greedy_success AS reference_greedy_success,
    pol.greedy_success AS policy_greedy_success,
    ref.mean_reward AS reference_mean_reward,
    pol.mean_reward AS policy_mean_reward,
    ref.pass_at_8 AS reference_pass_at_8,
    pol.pass_at_8 AS policy_pass_at_8,
    ref.pass_at_32 AS reference_pass_at_32,
    pol.mean_log_ratio AS policy_kl,
    target_success_rate(ref.success_rate, $beta) AS target_success_rate,
    abs(pol.success_rate - target_success_rate(ref.success_rate, $beta)) AS target_error,
    gap.projection_gap,
    ref.verifier_errors AS reference_verifier_errors,
    pol.verifier_errors AS policy_verifier_errors
FROM reference_eval AS ref
JOIN policy_eval AS pol USING (prompt_id)
JOIN projection_gap AS gap USING (prompt_id)
ORDER BY prompt_id;
