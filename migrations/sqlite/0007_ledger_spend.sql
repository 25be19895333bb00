-- LLM budgets sum the cost of the decisions recorded since the start of the UTC day and month,
-- before every ticket a worker decides (read at most every few seconds): by decision time, not by
-- scanning the whole ledger.
CREATE INDEX ledger_decided_at ON ledger (decided_at);
