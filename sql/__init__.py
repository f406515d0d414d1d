"""The SQL of BOLT, installed as the package bolt_sql: every weight, partition function and ESS."""
