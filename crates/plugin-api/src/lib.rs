//! Placeholder for the plugin boundary.
