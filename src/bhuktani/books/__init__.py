"""The merchant's money beyond one payment: statements and credits by date, the
transaction list, credit requests, service charges, disputes, low-balance alerts and the
settlement with each ISP."""
