-- Round-level means of prompt_stats (sql/prompt_stats.sql): the figures bolt run prints and
-- one point of the temperature-coverage-variance frontier (bolt frontier).
-- Tables used: prompt_stats.
SELECT
    count(*) AS train_prompts,
    avg(ess) AS mean_ess,
    avg(ess_fraction) AS mean_ess_fraction,
    avg(CAST(ess_fraction < 0.1 AS DOUBLE)) AS share_ess_fraction_below_0_1,
    avg(CAST(covered AS DOUBLE)) AS coverage,
    sum(rewarded) / sum(n) AS rewarded_share,
    avg(CAST(informative AS DOUBLE)) AS informative_share,
    avg(target_success) AS mean_target_success,
    avg(support_price) AS mean_support_price,
    avg(distinct_responses) AS mean_distinct_responses
FROM prompt_stats;
