//! Telling how a task that should have run for the life of the process ended.

use tokio::task::JoinError;

/// `panicked: <message>` or `was cancelled: <error>`, for logs and exit errors.
pub fn describe_exit(error: JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            format!("panicked: {message}")
        }
        Err(error) => format!("was cancelled: {error}"),
    }
}
