package web_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// pair signs up alice and bob, each in a browser context of their own,
// and puts them in one room: alice creates it inviting bob, bob accepts.
// It returns the room ID.
func pair(t *testing.T, s *server, alice, bob *page) string {
	t.Helper()
	alice.register(s, "alice", "alice-password")
	bob.register(s, "bob", "bob-password")
	alice.typeInto("name the room", "#new-room-name", "Tea")
	alice.typeInto("invite bob", "#new-room-invite", "@bob:"+s.ServerName)
	alice.click("create the room", "#create-room")
	alice.waitJS("the new room open", `document.getElementById('room-title')?.textContent === 'Tea'`, 20*time.Second)
	roomID := eval[string](alice, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`)
	if roomID == "" {
		t.Fatal("no active room in alice's list")
	}
	bob.waitJS("the invite", `!!document.querySelector('button[aria-label="Accept invite to Tea"]')`, 20*time.Second)
	bob.shot("invited")
	bob.click("accept the invite", `button[aria-label="Accept invite to Tea"]`)
	bob.waitJS("the room open", `document.getElementById('room-title')?.textContent === 'Tea'`, 20*time.Second)
	alice.waitJS("bob joined", `[...document.querySelectorAll('.ev.notice')].some(e => e.textContent.includes('bob joined'))`, 20*time.Second)
	return roomID
}

// startPair starts a server and a browser with a page each for alice
// and bob, and pairs them in a room (pair), whose ID it returns.
func startPair(t *testing.T) (s *server, alice, bob *page, roomID string) {
	t.Helper()
	clearArtifacts(t)
	s = startServer(t)
	b := newBrowser(t)
	steps := 0
	alice = b.newPage(t, "alice", &steps)
	bob = b.newPage(t, "bob", &steps)
	return s, alice, bob, pair(t, s, alice, bob)
}

// messageShown is a JavaScript test for a message with the text in the timeline.
func messageShown(text string) string {
	return `[...document.querySelectorAll('.ev.message .body')].some(e => e.textContent === ` + js(text) + `)`
}

// receiptShown is a JavaScript test for "Seen by READER" under the message with the text.
func receiptShown(text, reader string) string {
	return `[...document.querySelectorAll('.ev.message')].some(e => e.querySelector('.body').textContent === ` + js(text) +
		` && e.querySelector('.receipt')?.textContent === ` + js("Seen by "+reader) + `)`
}

// TestChat: two users sign up in two browsers, chat both ways live over
// the realtime connection, see each other typing, see read receipts and
// the member list, scroll back through history, and one leaves.
func TestChat(t *testing.T) {
	s, alice, bob, roomID := startPair(t)

	// Typing: alice types, bob sees it before anything is sent.
	alice.do("type to bob", chromedp.SendKeys(chromedp.ID("composer"), "hello bob"))
	bob.waitJS("alice typing", `document.getElementById('typing')?.textContent === 'alice is typing…'`, 20*time.Second)
	bob.shot("alice-typing")
	alice.do("send", chromedp.Click(chromedp.ID("send")))
	bob.waitJS("alice's message", messageShown("hello bob"), 20*time.Second)
	bob.waitJS("typing over", `document.getElementById('typing')?.textContent === ''`, 20*time.Second)

	// And the other way.
	bob.do("type to alice", chromedp.SendKeys(chromedp.ID("composer"), "hi alice"))
	alice.waitJS("bob typing", `document.getElementById('typing')?.textContent === 'bob is typing…'`, 20*time.Second)
	alice.shot("bob-typing")
	bob.do("send", chromedp.Click(chromedp.ID("send")))
	alice.waitJS("bob's message", messageShown("hi alice"), 20*time.Second)

	// Read receipts: each has the room open, so each marked the other's
	// message read.
	alice.waitJS("bob's receipt", receiptShown("hello bob", "bob"), 20*time.Second)
	bob.waitJS("alice's receipt", receiptShown("hi alice", "alice"), 20*time.Second)
	alice.shot("chat")
	bob.shot("chat")
	alice.checkNames("chat view")

	// Member list.
	bob.waitJS("members", `(() => { const m = [...document.querySelectorAll('.member-panel .member')].map(e => e.textContent);
		return m.length === 2 && m.some(x => x.includes('@alice:')) && m.some(x => x.includes('@bob:')); })()`, 20*time.Second)

	// Scrollback: 40 messages arrive while bob is away; back, he sees the
	// latest and loads the rest through /messages.
	token := s.login(t, "alice", "alice-password")
	for i := 1; i <= 40; i++ {
		s.send(t, token, roomID, fmt.Sprintf("backlog-%d", i), fmt.Sprintf("backlog %d", i))
	}
	bob.do("reload", chromedp.Reload())
	bob.waitJS("online again", `document.getElementById('conn-status')?.textContent === 'online'`, 20*time.Second)
	bob.do("open the room", chromedp.Click(chromedp.CSS(`.room-open[data-room-id="`+roomID+`"]`)))
	bob.waitJS("the latest message", messageShown("backlog 40"), 20*time.Second)
	if eval[bool](bob, messageShown("backlog 1")) {
		t.Fatal("the whole backlog arrived at once; scrollback not exercised")
	}
	for i := 0; i < 10 && !eval[bool](bob, messageShown("backlog 1")); i++ {
		bob.do("load older messages", chromedp.Click(chromedp.ID("load-older")))
		bob.waitJS("older messages loaded", `!document.getElementById('load-older').disabled`, 20*time.Second)
	}
	bob.waitJS("the first of the backlog", messageShown("backlog 1"), 5*time.Second)
	bob.waitJS("the history before it", messageShown("hi alice"), 5*time.Second)
	bob.shot("scrollback")

	// A phone-sized screen: the room fills it, the list is one tap away.
	bob.do("phone viewport", chromedp.EmulateViewport(390, 844))
	bob.shot("phone-room")
	bob.do("back to rooms", chromedp.Click(chromedp.CSS(`button[aria-label="Back to rooms"]`)))
	bob.waitJS("room list", `!!document.querySelector('.sidebar') && getComputedStyle(document.querySelector('.sidebar')).display !== 'none'`, 5*time.Second)
	bob.shot("phone-rooms")
	bob.do("desktop viewport", chromedp.EmulateViewport(1100, 760))

	// Inviting from the room, and joining by alias and by room ID.
	alice.do("create a public room",
		chromedp.SendKeys(chromedp.ID("new-room-name"), "Lobby"),
		chromedp.SendKeys(chromedp.ID("new-room-alias"), "lobby"),
		chromedp.Click(chromedp.ID("create-room")))
	alice.waitJS("the lobby open", `document.getElementById('room-title')?.textContent === 'Lobby'`, 20*time.Second)
	lobbyID := eval[string](alice, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`)
	bob.do("join by alias", chromedp.SendKeys(chromedp.ID("join-room-id"), "#lobby:"+s.ServerName), chromedp.Click(chromedp.ID("join-room")))
	bob.waitJS("the lobby open", `document.getElementById('room-title')?.textContent === 'Lobby'`, 20*time.Second)
	if got := eval[string](bob, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`); got != lobbyID {
		t.Fatalf("bob joined %q by alias, want %q", got, lobbyID)
	}
	alice.do("create a private room", chromedp.SendKeys(chromedp.ID("new-room-name"), "Attic"), chromedp.Click(chromedp.ID("create-room")))
	alice.waitJS("the attic open", `document.getElementById('room-title')?.textContent === 'Attic'`, 20*time.Second)
	atticID := eval[string](alice, `document.querySelector('.room.active .room-open')?.dataset.roomId || ''`)
	alice.do("invite bob from the room",
		chromedp.Click(chromedp.ID("invite-toggle")),
		chromedp.SendKeys(chromedp.ID("invite-user"), "@bob:"+s.ServerName),
		chromedp.Click(chromedp.ID("invite-send")))
	alice.waitJS("bob invited", `[...document.querySelectorAll('.member-panel .member.invite')].some(e => e.textContent.includes('@bob:'))`, 20*time.Second)
	alice.shot("invited-from-room")
	bob.waitJS("the invite", `!!document.querySelector('button[aria-label="Accept invite to Attic"]')`, 20*time.Second)
	bob.do("join by room ID", chromedp.SendKeys(chromedp.ID("join-room-id"), atticID), chromedp.Click(chromedp.ID("join-room")))
	bob.waitJS("the attic open", `document.getElementById('room-title')?.textContent === 'Attic'`, 20*time.Second)
	bob.shot("rooms")

	// Leaving.
	bob.do("open the room", chromedp.Click(chromedp.CSS(`.room-open[data-room-id="`+roomID+`"]`)))
	bob.do("leave", chromedp.Click(chromedp.ID("leave-room")), chromedp.Click(chromedp.ID("leave-confirm")))
	bob.waitJS("the room gone from the list", `!document.querySelector('.room-open[data-room-id="`+roomID+`"]')`, 20*time.Second)
	alice.do("open the room", chromedp.Click(chromedp.CSS(`.room-open[data-room-id="`+roomID+`"]`)))
	alice.waitJS("bob left", `[...document.querySelectorAll('.ev.notice')].some(e => e.textContent.includes('bob left'))`, 20*time.Second)
	alice.shot("bob-left")
}

// TestLogin: a user logs out and back in with the password; the rooms
// are there again, and a wrong password is refused on the form.
func TestLogin(t *testing.T) {
	clearArtifacts(t)
	s := startServer(t)
	b := newBrowser(t)
	steps := 0
	alice := b.newPage(t, "alice", &steps)
	alice.register(s, "alice", "alice-password")
	alice.do("create a room", chromedp.SendKeys(chromedp.ID("new-room-name"), "Notes"), chromedp.Click(chromedp.ID("create-room")))
	alice.waitJS("the room open", `document.getElementById('room-title')?.textContent === 'Notes'`, 20*time.Second)
	alice.checkNames("room list")
	alice.do("log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-user")))
	alice.checkNames("sign-in screen")

	alice.do("wrong password",
		chromedp.SendKeys(chromedp.ID("login-user"), "alice"),
		chromedp.SendKeys(chromedp.ID("login-pass"), "not-it"),
		chromedp.Click(chromedp.ID("login-submit")))
	alice.waitJS("the refusal", `document.querySelector('.login .error')?.textContent.length > 0`, 20*time.Second)
	alice.shot("wrong-password")
	alice.do("right password",
		chromedp.Evaluate[chromedp.Void](`document.getElementById('login-pass').value = ''`),
		chromedp.SendKeys(chromedp.ID("login-pass"), "alice-password"),
		chromedp.Click(chromedp.ID("login-submit")))
	alice.waitJS("signed in", `document.getElementById('conn-status')?.textContent === 'online'`, 20*time.Second)
	alice.waitJS("the room listed", `[...document.querySelectorAll('.room-name')].some(e => e.textContent === 'Notes')`, 20*time.Second)
	alice.shot("logged-in")
}
