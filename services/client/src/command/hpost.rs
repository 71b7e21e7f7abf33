//! HPOST (5.4.3): as HPUT, with HTTP POST.

use omadm_proto::command::Hpost;
use reqwest::Method;

use super::hput::upload;
use super::{CommandContext, CommandOutcome};

/// 200 when the repository took the data; see [`upload`].
pub async fn execute(context: &mut CommandContext<'_>, hpost: &Hpost) -> CommandOutcome {
    upload(context, Method::POST, hpost.server_uri(), hpost.client_uris()).await
}
