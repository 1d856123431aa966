//! The watched interfaces, one [`Watch`] each: attached, or gone and
//! waited for (link notifications drive them), with each one's packet
//! count across its lives.

use crate::kernel::loader::{Kernel, LoaderError};
use crate::kernel::preflight;
use crate::settings::AttachMode;

/// One watched interface: attached (with the index it had then), or gone
/// and waited for. Link notifications drive it; nothing polls.
pub(super) struct Watch {
    pub(super) iface: String,
    pub(super) attach: AttachMode,
    pub(super) ifindex: Option<u32>,
    /// Times the interface disappeared under the sensor.
    pub(super) lost: u64,
    /// Times the sensor attached again to a returning interface.
    pub(super) reattached: u64,
    /// Packets the kernel counted under the indexes it had before.
    pub(super) banked_packets: u64,
}

impl Watch {
    /// Attaches at start. An error names the interface; the caller stops
    /// (dropping the kernel detaches whatever was attached).
    pub(super) fn start(
        kernel: &mut Kernel,
        iface: &str,
        attach: AttachMode,
    ) -> Result<(Watch, &'static str), LoaderError> {
        let ifindex = preflight::interface_index(iface)
            .ok_or_else(|| LoaderError::NoInterface(iface.to_owned()))?;
        // Counted from the first packet: registered before attaching.
        kernel.count_iface_packets(ifindex)?;
        let mode = kernel.attach(iface, attach)?;
        let watch = Watch {
            iface: iface.to_owned(),
            attach,
            ifindex: Some(ifindex),
            lost: 0,
            reattached: 0,
            banked_packets: 0,
        };
        Ok((watch, mode))
    }

    /// Packets seen on this interface, over all its lives.
    /// `read`: the counts of the attached interfaces, by index.
    pub(super) fn packets(&self, read: &std::collections::HashMap<u32, u64>) -> u64 {
        let current = self
            .ifindex
            .and_then(|ifindex| read.get(&ifindex).copied())
            .unwrap_or(0);
        self.banked_packets + current
    }

    pub(super) fn on_link_change(&mut self, kernel: &mut Kernel) {
        let now = preflight::interface_index(&self.iface);
        match (self.ifindex, now) {
            // Still the same interface (down/up keeps the program attached).
            (Some(old), Some(new)) if old == new => {}
            (Some(old), _) => {
                // Gone, or replaced by a new interface of the same name.
                self.ifindex = None;
                self.lost += 1;
                match kernel.forget_iface_packets(old) {
                    Ok(last) => self.banked_packets += last,
                    Err(err) => tracing::error!(
                        iface = self.iface,
                        error = %err,
                        "cannot read the vanished interface's packet count"
                    ),
                }
                if let Err(err) = kernel.detach_from(&self.iface) {
                    tracing::debug!(error = %err, "dropping the link of a vanished interface");
                }
                tracing::warn!(
                    iface = self.iface,
                    "the watched interface disappeared: watching nothing on it until it returns"
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
        let ifindex = preflight::interface_index(&self.iface);
        if let Some(ifindex) = ifindex
            && let Err(err) = kernel.count_iface_packets(ifindex)
        {
            tracing::error!(
                iface = self.iface,
                error = %err,
                "cannot count the returning interface's packets"
            );
        }
        match kernel.attach(&self.iface, self.attach) {
            Ok(mode) => {
                self.ifindex = ifindex;
                self.reattached += 1;
                tracing::info!(
                    iface = self.iface,
                    xdp_mode = mode,
                    "the watched interface is back: sensor attached again, same rules"
                );
            }
            Err(err) => {
                // Nothing was counted under it: the entry goes (0 packets).
                if let Some(ifindex) = ifindex {
                    let _ = kernel.forget_iface_packets(ifindex);
                }
                tracing::error!(
                    iface = self.iface,
                    error = %err,
                    "the watched interface is back but attaching failed; waiting for its next change"
                )
            }
        }
    }
}
