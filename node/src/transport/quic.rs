//! QUIC peer transport (quinn + rustls, mutual TLS with a cluster CA).
