//! Linux DAHDI driver (in progress).
