// driver.mjs drives one headless Chromium (Debian's /usr/bin/chromium,
// through playwright-core) for the Go acceptance tests of the setup page.
//
//   node driver.mjs BASE_URL SCREENSHOT_DIR
//
// It reads one JSON command per line on standard input and answers each
// with one line "=> SEQ JSON" on standard output, SEQ counting from 1; a
// failed command answers {"error": "..."} and the driver goes on. The
// tests decide what to check; this script only acts on the page and
// reports what it sees. Commands:
//
//   {"op":"goto","path":"/users"}            → page
//   {"op":"submit","form":"user-add","fields":{"name":"bob",...},
//    "scope":"#users tr[data-id=\"bob\"]","files":{"backup":"/path"}}
//                                            → page, after the navigation
//   {"op":"values","form":"identity"}        → {values:{name:value}} (no passwords)
//   {"op":"table","id":"users"}              → {rows:[{id,cells,text}]}
//   {"op":"links","selector":"nav a"}        → {links:[{href,text}]}
//   {"op":"screenshot","name":"users"}       → {file} (the full page)
//   {"op":"viewport","width":390,"height":844}
//   {"op":"download","selector":"a[href=\"/maintenance/backup\"]","name":"backup.json"} → {file,size}
//
// where "page" is {url, path, status, title, notice, errors:{field:message}}.

import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { statSync } from 'node:fs';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
	console.error('usage: node driver.mjs BASE_URL SCREENSHOT_DIR');
	process.exit(2);
}

// How long one action or navigation may take before it is an error.
const actionTimeout = 15000;

const browser = await chromium.launch({
	executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
	// Playwright gives every launch a fresh, temporary --user-data-dir.
	args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
		'--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({
	baseURL: base,
	ignoreHTTPSErrors: true, // the box's own certificate
	acceptDownloads: true,
	viewport: { width: 1024, height: 768 },
});
context.setDefaultTimeout(actionTimeout);
const page = await context.newPage();
let lastStatus = 0;
page.on('response', (r) => {
	if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) lastStatus = r.status();
});

// describe reports what a person would look at after a page loads.
async function describe() {
	const errors = {};
	for (const el of await page.locator('span.error[data-field]').all()) {
		const text = (await el.innerText()).trim();
		if (text) errors[await el.getAttribute('data-field')] = text;
	}
	const notices = await page.locator('p.notice').allInnerTexts();
	const url = new URL(page.url());
	return { url: url.href, path: url.pathname, status: lastStatus, title: await page.title(),
		notice: notices.join('\n').trim(), errors };
}

// form finds the form with the given id, inside scope when given. Forms
// repeated per table row may carry the id with a suffix ("user-del-bob").
async function form(id, scope) {
	const root = scope ? page.locator(scope).first() : page;
	for (const sel of [`form[id="${id}"]`, `form[id^="${id}-"]`]) {
		const f = root.locator(sel);
		if (await f.count() > 0) return f.first();
	}
	throw new Error(`no form #${id}` + (scope ? ` in ${scope}` : '') + ` on ${page.url()}`);
}

const ops = {
	async goto(c) {
		await page.goto(c.path, { waitUntil: 'load' });
		return describe();
	},
	async submit(c) {
		const f = await form(c.form, c.scope);
		for (const [name, value] of Object.entries(c.fields || {})) {
			const input = f.locator(`[name="${name}"]`).first();
			const tag = await input.evaluate((el) => el.tagName.toLowerCase() + ':' + (el.type || ''));
			if (tag.startsWith('select')) await input.selectOption(String(value));
			else if (tag.endsWith(':checkbox')) await input.setChecked(Boolean(value));
			else await input.fill(String(value));
		}
		for (const [name, file] of Object.entries(c.files || {})) {
			await f.locator(`[name="${name}"]`).first().setInputFiles(file);
		}
		await Promise.all([
			page.waitForNavigation({ waitUntil: 'load' }),
			f.locator('button[type="submit"], input[type="submit"]').first().click(),
		]);
		return describe();
	},
	async values(c) {
		const f = await form(c.form, c.scope);
		const values = {};
		for (const input of await f.locator('input[name], select[name], textarea[name]').all()) {
			const type = await input.getAttribute('type');
			if (type === 'password' || type === 'hidden' || type === 'file') continue;
			values[await input.getAttribute('name')] = await input.inputValue();
		}
		return { values };
	},
	async table(c) {
		const rows = [];
		for (const tr of await page.locator(`table#${c.id} tr`).all()) {
			const cells = (await tr.locator('td').allInnerTexts()).map((s) => s.trim());
			if (cells.length === 0) continue; // a header row
			rows.push({ id: await tr.getAttribute('data-id'), cells, text: (await tr.innerText()).trim() });
		}
		return { rows };
	},
	async links(c) {
		const links = [];
		for (const a of await page.locator(c.selector || 'nav a').all()) {
			links.push({ href: await a.getAttribute('href'), text: (await a.innerText()).trim() });
		}
		return { links };
	},
	async screenshot(c) {
		const file = join(shots, c.name + '.png');
		await page.screenshot({ path: file, fullPage: true });
		return { file };
	},
	async viewport(c) {
		await page.setViewportSize({ width: c.width, height: c.height });
		return {};
	},
	async download(c) {
		const [dl] = await Promise.all([page.waitForEvent('download'), page.locator(c.selector).first().click()]);
		const file = join(shots, c.name || dl.suggestedFilename());
		await dl.saveAs(file);
		return { file, size: statSync(file).size, suggested: dl.suggestedFilename() };
	},
};

let seq = 0;
const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
	if (!line.trim()) continue;
	seq++;
	let answer;
	try {
		const c = JSON.parse(line);
		const op = ops[c.op];
		if (!op) throw new Error(`unknown op ${c.op}`);
		answer = await op(c);
	} catch (e) {
		answer = { error: String(e && e.message || e) };
	}
	process.stdout.write(`=> ${seq} ${JSON.stringify(answer)}\n`);
}
await browser.close();
