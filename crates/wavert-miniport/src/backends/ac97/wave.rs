//! The AC'97 wave miniports (render on PCM out, capture on PCM in): the
//! shared [`WaveMiniport`] over [`Ac97Device`].

use super::device::Ac97Device;
use crate::wave::WaveMiniport;

/// The wave miniport of one AC'97 channel.
pub type Ac97Wave<P, IO> = WaveMiniport<Ac97Device<P, IO>>;
