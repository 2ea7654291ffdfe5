//! Store errors.
// (being written by the store work)
