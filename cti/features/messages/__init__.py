"""Follow-up messages: e-mail and SMS from templates on work-order events, through an outbox."""
