-- Held-out summary over sql/eval.sql's rows. J = mean reward - beta * KL (docs/DESIGN.md section 1).
-- accuracy_gain_se is the paired standard error over prompts of the per-prompt gain.
-- Parameters: $beta. Tables used: eval.
SELECT
    count(*) AS heldout_prompts,
    any_value(samples) AS heldout_samples_per_prompt,
    avg(reference_success_rate) AS ref_accuracy,
    avg(policy_success_rate) AS policy_accuracy,
    avg(reference_greedy_success) AS ref_accuracy_greedy,
    avg(policy_greedy_success) AS policy_accuracy_greedy,
    avg(reference_pass_at_8) AS ref_pass_at_8,
    avg(policy_pass_at_8) AS policy_pass_at_8,
    -- How pi_ref's per-prompt success rates spread: the regime a reward tilt can help.
    avg(CAST(reference_success_rate < 0.3 AS DOUBLE)) AS ref_share_below_0_3,
    avg(CAST(reference_success_rate > 0.6 AS DOUBLE)) AS ref_share_above_0_6,
    avg(CAST(reference_success_rate = 0 AS DOUBLE)) AS ref_share_never_solved,
    -- Expected share of prompts with no success in 32 samples: mean of 1 - pass@32.
    avg(1 - reference_pass_at_32) AS ref_share_unsolved_in_32,
    avg(reference_mean_reward) AS ref_mean_reward,
    avg(policy_mean_reward) AS policy_mean_reward,
    avg(policy_kl) AS kl,
    avg(policy_mean_reward) - $beta * avg(policy_kl) AS objective_j,
    avg(reference_mean_reward) AS ref_objective_j,
    avg(policy_success_rate - reference_success_rate) AS accuracy_gain,
    stddev_samp(policy_success_rate - reference_success_rate) / sqrt(count(*)) AS accuracy_gain_se,
    avg(target_success_rate) AS target_accuracy,
    avg(target_error) AS target_error,
    avg(projection_gap) AS projection_gap,
    -- Held-out samples the verifier could not score (never counted as successes).
    CAST(sum(reference_verifier_errors) + sum(policy_verifier_errors) AS BIGINT)
        AS heldout_verifier_errors
FROM eval;
