-- Round-level means of prompt_stats (sql/prompt_stats.sql): the figures bolt run prints.
-- Tables used: prompt_stats.
SELECT
    count(*) AS train_prompts,
    avg(ess) AS mean_ess,
    avg(ess_fraction) AS mean_ess_fraction,
    avg(CAST(covered AS DOUBLE)) AS coverage
FROM prompt_stats;
