-- The last successful sync of each billing target survives a failed one (BillingDataStale measures from it).
ALTER TABLE cost_sync_state ADD COLUMN last_ok_at TIMESTAMPTZ;
UPDATE cost_sync_state SET last_ok_at = last_sync_at WHERE last_status = 'ok';
