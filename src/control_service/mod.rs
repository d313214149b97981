//! `hubkeeper control-service`: the Managed-CF control service (spec §8).
