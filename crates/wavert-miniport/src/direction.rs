//! The two directions of a WaveRT device and a container holding one value
//! per direction, so that per-direction lookups cannot fail.

use core::ops::{Index, IndexMut};

/// Which side of a device: what it plays or what it records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The render (speaker) side.
    Render,
    /// The capture (microphone) side.
    Capture,
}

impl Direction {
    /// Both directions, render first.
    pub const BOTH: [Self; 2] = [Self::Render, Self::Capture];

    /// The other side of a cable.
    #[must_use]
    pub const fn other(self) -> Self {
        match self {
            Self::Render => Self::Capture,
            Self::Capture => Self::Render,
        }
    }
}

/// One `T` for each [`Direction`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerDirection<T> {
    /// The render side's value.
    pub render: T,
    /// The capture side's value.
    pub capture: T,
}

impl<T> PerDirection<T> {
    /// The same value (made twice) for both directions.
    pub fn new_with(mut make: impl FnMut(Direction) -> T) -> Self {
        Self {
            render: make(Direction::Render),
            capture: make(Direction::Capture),
        }
    }
}

impl<T> Index<Direction> for PerDirection<T> {
    type Output = T;

    fn index(&self, direction: Direction) -> &T {
        match direction {
            Direction::Render => &self.render,
            Direction::Capture => &self.capture,
        }
    }
}

impl<T> IndexMut<Direction> for PerDirection<T> {
    fn index_mut(&mut self, direction: Direction) -> &mut T {
        match direction {
            Direction::Render => &mut self.render,
            Direction::Capture => &mut self.capture,
        }
    }
}
