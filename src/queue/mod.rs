//! Workers on the shared queue.
