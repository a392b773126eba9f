"""Payment profile: contextual data acquisition → PaymentProfile."""
