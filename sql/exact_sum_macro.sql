-- exact_sum(term): the sum of terms in [-1, 1], exact (docs/DESIGN.md, "Exact sums").
-- Each term is added as the integer round(term * 2^96) in a HUGEINT. Integer sums are exact,
-- hence the same bits in any row order and with any number of threads (a float sum() changes
-- its last bit with the order rows arrive in), with neither a sort nor a list per group.
-- Callers scale their terms so the largest magnitude is 1 (exp(x - max x), or a value over a
-- power of two at least as large): then the rounding of a tiny term (at most 2^-97) is below
-- what a float64 sum >= 1 can hold, and fewer than 2^31 terms cannot overflow 2^127.
CREATE OR REPLACE TEMP MACRO exact_sum(term) AS
    CAST(sum(CAST(term * pow(2, 96) AS HUGEINT)) AS DOUBLE) / pow(2, 96);
