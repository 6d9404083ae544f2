//! Upstream selection and retry: which backend gets a request, and where a failed try goes.
//!
//! Whether a failure may be retried, and on what, is decided by `ErrorKind::retry` alone;
//! this module only applies that answer to the pool and to what it already tried.

use tracing::debug;

use super::conn::{Body, ClientConn, RequestInfo};
use crate::error::{ErrorKind, ProxyError, Retry};
use crate::http1;

impl ClientConn {
    /// Sends the request to a backend (moving on to the next one where that is safe) and
    /// relays the response. `Ok(keep_open)` once a response went out; `Err` when the load
    /// balancer must answer itself.
    pub(super) async fn forward(
        &mut self,
        info: &RequestInfo,
        body: &mut Body,
    ) -> Result<bool, ProxyError> {
        let pool = &*self.shared.pool;
        let Some(mut idx) = pool.choose(info.sticky_token.as_deref()) else {
            return Err(ProxyError::new(
                ErrorKind::NoHealthyBackend,
                "no backend in rotation",
            ));
        };
        if info.host_missing {
            http1::push_header(
                &mut self.req,
                b"host",
                pool.backend(idx).host_value.as_bytes(),
            );
        }
        self.finish_request(info, body);

        let mut tried = 0u64;
        let mut fresh = false;
        loop {
            tried |= 1 << idx;
            let err = match self.attempt(idx, info, fresh, body).await {
                Ok(keep_open) => return Ok(keep_open),
                Err(e) => e,
            };
            let pool = &*self.shared.pool;
            if err.kind().is_backend_failure() {
                let backend = &pool.backend(idx);
                debug!(backend = %backend.id, error = %err, "backend request failed");
                backend.set_last_error(err.to_string());
            }
            if err.kind() == ErrorKind::ResponseTimeout {
                pool.record_timeout(idx, self.shared.eject_after_timeouts);
            }
            match err.kind().retry(info.idempotent, body.replayable()) {
                // Backends close idle connections; a request that found one closed was never
                // processed there, so it gets one fresh connection to the same backend.
                Retry::FreshConnection if !fresh => fresh = true,
                Retry::FreshConnection | Retry::NextBackend => match pool.next_after(idx, tried) {
                    Some(next) if pool.is_up(next) => {
                        idx = next;
                        fresh = false;
                    }
                    _ => return Err(err),
                },
                Retry::No => return Err(err),
            }
        }
    }
}
