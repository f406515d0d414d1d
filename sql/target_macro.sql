-- The exact per-prompt Boltzmann target success rate for 0/1 rewards (docs/DESIGN.md section 1):
--   p* = p e^(1/beta) / (p e^(1/beta) + 1 - p),  p = pi_ref's success rate on the prompt.
-- Written as a logistic of the target log-odds z = logit(p) + 1/beta, never exponentiating a
-- positive number, so beta down to 1e-4 cannot overflow.
CREATE OR REPLACE TEMP MACRO target_success_rate(p, beta) AS
    CASE
        WHEN p <= 0 THEN 0.0
        WHEN p >= 1 THEN 1.0
        WHEN ln(p) - ln(1 - p) + 1 / beta >= 0
            THEN 1 / (1 + exp(-(ln(p) - ln(1 - p) + 1 / beta)))
        ELSE exp(ln(p) - ln(1 - p) + 1 / beta) / (1 + exp(ln(p) - ln(1 - p) + 1 / beta))
    END;
