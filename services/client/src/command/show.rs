//! SHOW (5.4.7): opens the URL in the device's browser, never waiting for it.

use omadm_proto::command::Show;
use omadm_proto::status::StatusCode;

use super::{CommandContext, CommandOutcome};

/// 200 once the browser hook is started on a blocking thread; 406 (optional feature not supported) when the
/// device has no browser.
pub fn execute(context: &CommandContext<'_>, show: &Show) -> CommandOutcome {
    let Some(browser) = context.device.browser() else {
        return CommandOutcome::status(StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED);
    };
    let url = show.server_uri().substitute(&context.device.server_uri_params());
    // Not awaited: the user may look at the page for minutes; the session goes on.
    drop(tokio::task::spawn_blocking(move || browser.open(&url)));
    CommandOutcome::status(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;
    use crate::device::BrowserHook;
    use omadm_proto::uri::ServerUri;
    use std::sync::Arc;

    struct SlowBrowser(std::sync::mpsc::Sender<String>);
    impl BrowserHook for SlowBrowser {
        fn open(&self, url: &str) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let _ = self.0.send(url.to_owned());
        }
    }

    #[tokio::test]
    async fn show_opens_the_browser_without_waiting() {
        let mut device = crate::device::tests::sample_device();
        let transport = offline_transport();
        let show = Show::new(ServerUri::parse("http://h/info/[DevID]").unwrap());
        {
            let context = CommandContext { device: &mut device, transport: &transport };
            assert_eq!(execute(&context, &show).code(), StatusCode::OPTIONAL_FEATURE_NOT_SUPPORTED);
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        device.set_browser(Arc::new(SlowBrowser(sender)));
        let context = CommandContext { device: &mut device, transport: &transport };
        let started = std::time::Instant::now();
        assert_eq!(execute(&context, &show).code(), StatusCode::OK);
        assert!(started.elapsed() < std::time::Duration::from_millis(150), "SHOW waited for the browser");
        let opened = tokio::task::spawn_blocking(move || receiver.recv().unwrap()).await.unwrap();
        assert_eq!(opened, "http://h/info/IMEI%3A4930051");
    }
}
