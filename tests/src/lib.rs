//! Helpers shared by the end-to-end tests: built artifacts, scratch homes, running `bottle`.
