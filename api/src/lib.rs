//! HTTP admin API (axum): REST under /api/v1, server-sent events, /metrics, web console.
//! Filled by a later issue.
