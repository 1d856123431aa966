//! The watched interface: attached, or gone and waited for (link
//! notifications drive it).

use crate::kernel::loader::Kernel;
use crate::kernel::preflight;
use crate::settings::AttachMode;

/// The watched interface: attached (with the index it had then), or gone
/// and waited for. Link notifications drive it; nothing polls.
pub(super) struct Watch {
    pub(super) iface: String,
    pub(super) attach: AttachMode,
    pub(super) ifindex: Option<u32>,
    /// Times the interface disappeared under the sensor.
    pub(super) lost: u64,
    /// Times the sensor attached again to a returning interface.
    pub(super) reattached: u64,
}

impl Watch {
    pub(super) fn on_link_change(&mut self, kernel: &mut Kernel) {
        let now = preflight::interface_index(&self.iface);
        match (self.ifindex, now) {
            // Still the same interface (down/up keeps the program attached).
            (Some(old), Some(new)) if old == new => {}
            (Some(_), _) => {
                // Gone, or replaced by a new interface of the same name.
                self.ifindex = None;
                self.lost += 1;
                if let Err(err) = kernel.detach() {
                    tracing::debug!(error = %err, "dropping the link of a vanished interface");
                }
                tracing::warn!(
                    iface = self.iface,
                    "the watched interface disappeared: watching nothing until it returns"
                );
                if now.is_some() {
                    self.reattach(kernel);
                }
            }
            (None, Some(_)) => self.reattach(kernel),
            (None, None) => {}
        }
    }

    pub(super) fn reattach(&mut self, kernel: &mut Kernel) {
        match kernel.attach(&self.iface, self.attach) {
            Ok(mode) => {
                self.ifindex = preflight::interface_index(&self.iface);
                self.reattached += 1;
                tracing::info!(
                    iface = self.iface,
                    xdp_mode = mode,
                    "the watched interface is back: sensor attached again, same rules"
                );
            }
            Err(err) => tracing::error!(
                iface = self.iface,
                error = %err,
                "the watched interface is back but attaching failed; waiting for its next change"
            ),
        }
    }
}
