// Package e2e holds the acceptance tests of the setup page in a real
// browser: headless Chromium (Debian's chromium package), driven by
// playwright-core from driver.mjs, against the real "concierge serve" in a
// network namespace, with real mail and NetBIOS clients on other hosts of
// the test LAN. The package holds no code of the box; "make test-deps"
// installs Chromium, Node.js and playwright-core (npm ci in this
// directory).
package e2e
