// Package storagetest gives tests a fresh, empty database on each backend:
// a temporary SQLite folder, or a new database on the PostgreSQL server
// named by PLEXUS_TEST_POSTGRES, dropped when the test ends. It does not
// import storage, so storage's own tests can use it too.
package storagetest
