package web_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// unnamedControlsJS finds the interactive controls of the page that have
// no accessible name: it yields {controls: how many it checked, unnamed:
// short descriptions such as "button#gc-mic.icon"}. It is the one check
// every view's test runs (page.checkNames).
//
// A control is a button, input (but a hidden one), select, textarea,
// a[href], an element with a widget role (button, link, tab, checkbox,
// switch, menuitem, slider) or any element in the tab order (tabindex
// 0 or more), if rendered (an element hidden by `hidden`, display:none
// or an ancestor's is not in the accessibility tree). Its name is taken,
// in the order of the accessible name computation (W3C accname 1.2,
// 4.3.2), from aria-labelledby (the referenced elements' text),
// aria-label, a label (label[for] or an enclosing label), an input
// button's value, or, for the roles named from their content (buttons,
// links, tabs and the like; not a focusable region or log), its text
// with the alt text of images in it. Title and placeholder, which accname
// accepts as a last resort, do not count: a tooltip or a hint is not a
// label. A name must hold a letter or a digit, so a "×" or "‹" glyph
// alone is no name.
const unnamedControlsJS = `(() => {
	const meaningful = (s) => /[\p{L}\p{N}]/u.test(s || '');
	const text = (el) => {
		let s = '';
		for (const n of el.childNodes) {
			if (n.nodeType === Node.TEXT_NODE) s += n.textContent;
			else if (n.nodeType === Node.ELEMENT_NODE) {
				if (n.getAttribute('aria-hidden') === 'true') continue;
				if (n.tagName === 'IMG') s += ' ' + (n.getAttribute('alt') || '');
				else s += ' ' + (n.getAttribute('aria-label') || text(n));
			}
		}
		return s.trim();
	};
	const name = (el) => {
		const by = el.getAttribute('aria-labelledby');
		if (by) {
			const s = by.split(/\s+/).map((id) => document.getElementById(id)).filter(Boolean).map(text).join(' ');
			if (meaningful(s)) return s;
		}
		if (meaningful(el.getAttribute('aria-label'))) return el.getAttribute('aria-label');
		if (el.labels) for (const l of el.labels) if (meaningful(text(l))) return text(l);
		if (el.tagName === 'INPUT' && ['button', 'submit', 'reset'].includes(el.type) && meaningful(el.value)) return el.value;
		if (el.tagName === 'INPUT' && el.type === 'image' && meaningful(el.alt)) return el.alt;
		const role = el.getAttribute('role');
		const fromContent = role ? ['button', 'link', 'tab', 'checkbox', 'switch', 'menuitem', 'option'].includes(role)
			: ['BUTTON', 'A', 'SUMMARY'].includes(el.tagName);
		return fromContent ? text(el) : '';
	};
	const describe = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
		[...el.classList].map((c) => '.' + c).join('') +
		(el.getAttribute('role') ? '[role=' + el.getAttribute('role') + ']' : '') +
		(el.type && el.tagName === 'INPUT' ? '[type=' + el.type + ']' : '');
	const controls = document.querySelectorAll('button, input:not([type=hidden]), select, textarea, a[href], ' +
		'[role=button], [role=link], [role=tab], [role=checkbox], [role=switch], [role=menuitem], [role=slider], ' +
		'[tabindex]:not([tabindex^="-"])');
	const shown = [...controls].filter((el) => el.checkVisibility());
	return { controls: shown.length, unnamed: shown.filter((el) => !meaningful(name(el))).map(describe) };
})()`

// checkNames fails the test (without stopping it) if the view on the
// page has interactive controls without an accessible name, listing them.
func (p *page) checkNames(view string) {
	p.t.Helper()
	found := checkControls(p)
	p.t.Logf("%s: %d controls in the %s, %d without a name", p.name, found.Controls, view, len(found.Unnamed))
	if found.Controls == 0 {
		p.t.Errorf("%s: no controls shown in the %s: checked at the wrong moment?", p.name, view)
	}
	if len(found.Unnamed) > 0 {
		p.shot("unnamed-controls-" + view)
		p.t.Errorf("%s: the %s has %d of %d controls without an accessible name: %s",
			p.name, view, len(found.Unnamed), found.Controls, strings.Join(found.Unnamed, ", "))
	}
}

// controlNames is what unnamedControlsJS yields.
type controlNames struct {
	Controls int      `json:"controls"`
	Unnamed  []string `json:"unnamed"`
}

func checkControls(p *page) controlNames {
	p.t.Helper()
	raw := eval[string](p, `JSON.stringify(`+unnamedControlsJS+`)`)
	var found controlNames
	if err := json.Unmarshal([]byte(raw), &found); err != nil {
		p.t.Fatalf("%s: accessible names: %q: %v", p.name, raw, err)
	}
	return found
}

// TestUnnamedControls: the check finds each kind of control without a
// name, and accepts each way of naming one.
func TestUnnamedControls(t *testing.T) {
	b := newBrowser(t)
	steps := 0
	p := b.newPage(t, "checker", &steps)
	const fixture = `<!doctype html><title>names</title>
		<button id="ok-text">Send</button>
		<button id="ok-label" aria-label="Close">×</button>
		<span id="cap">Volume</span><input id="ok-by" aria-labelledby="cap">
		<label for="ok-for">Name</label><input id="ok-for">
		<label>Topic <textarea id="ok-wrap"></textarea></label>
		<input type="submit" id="ok-value" value="Go">
		<button id="ok-img"><img src="data:," alt="Search"></button>
		<div role="button" id="ok-role">Menu</div>
		<a href="#x" id="ok-link">Help</a>
		<div role="tab" id="ok-tab" tabindex="0">Chat</div>
		<div role="application" id="ok-app" tabindex="0" aria-label="Stage"></div>
		<div tabindex="-1" id="not-in-tab-order"></div>
		<button id="hidden-attr" hidden></button>
		<div style="display:none"><button id="hidden-parent"></button></div>
		<input type="hidden" id="hidden-input">
		<a id="not-a-link"></a>
		<button id="bad-glyph">×</button>
		<button id="bad-empty-label" aria-label=" "></button>
		<input id="bad-placeholder" placeholder="Search">
		<select id="bad-select"><option>One</option></select>
		<textarea id="bad-title" title="Notes"></textarea>
		<div role="button" id="bad-role"></div>
		<a href="#y" id="bad-link"><span aria-hidden="true">Gone</span></a>
		<button id="bad-by" aria-labelledby="nowhere"></button>
		<ol role="log" id="bad-log" tabindex="0"><li>Not a name</li></ol>
		<div role="switch" id="bad-switch"></div>`
	p.do("open the fixture", chromedp.Navigate("data:text/html;charset=utf-8,"+url.PathEscape(fixture)), chromedp.WaitReady(chromedp.CSS("#bad-by")))
	found := checkControls(p)
	want := []string{"button#bad-glyph", "button#bad-empty-label", "input#bad-placeholder[type=text]", "select#bad-select",
		"textarea#bad-title", "div#bad-role[role=button]", "a#bad-link", "button#bad-by",
		"ol#bad-log[role=log]", "div#bad-switch[role=switch]"}
	if !slices.Equal(found.Unnamed, want) || found.Controls != 21 {
		t.Errorf("%d controls checked, unnamed:\n got %q\nwant %q of 21", found.Controls, found.Unnamed, want)
	}
}
