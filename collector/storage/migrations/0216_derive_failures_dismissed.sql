-- A batch given up on that an operator decided will not be derived again (`observatory derive dismiss`,
-- POST /v1/derive/dismiss): its derived rows stay missing, knowingly, and it no longer counts as waiting (the gauge
-- observatory_writer_underived_batches, the ObservatoryDeriveFailures ticket). The reason is the operator's text,
-- bounded and with secrets redacted before it is stored. A dismissed batch can still be derived again by naming it
-- (`observatory derive retry --batch N`).
ALTER TABLE derive_failures ADD COLUMN dismissed_at TIMESTAMPTZ;
ALTER TABLE derive_failures ADD COLUMN dismissed_reason VARCHAR;
