package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"concierge/appliance/control"
)

// The firmware page: the running version and slot, each slot's version
// and state, and the upload of a new bundle (op firmware.apply).

// MaxBundleBytes bounds an uploaded firmware bundle. A bundle is a kernel (some 8 MB) and an initramfs (some 8 MB); the
// upload is stored on the box's RAM disk, so the bound is tight.
const MaxBundleBytes = 48 << 20

func loadFirmware(ctx context.Context, c control.Caller, _ *http.Request) (any, error) {
	var st control.FirmwareStatus
	if err := c.Call(ctx, control.OpFirmwareStatus, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// firmwareApply stores the upload in a temporary file (the multipart
// reader's own when it has one), lets firmware.apply verify and install
// it, and answers before the box reboots.
func (s *Server) firmwareApply(w http.ResponseWriter, r *http.Request) {
	var applied control.FirmwareApplied
	err := s.withUpload(r, "bundle", func(path string) error {
		ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
		defer cancel()
		return s.ctl.Call(ctx, control.OpFirmwareApply, control.Args{"path": path}, &applied)
	})
	if err == nil {
		s.log.Info("web: firmware installed; rebooting", "version", applied.Version, "slot", applied.Slot, "ip", clientIP(r))
		s.sessions.setNotice(sessionOf(r), fmt.Sprintf("Version %s is installed in slot %s; the box is restarting into it. This page comes back in about a minute.", applied.Version, applied.Slot))
		http.Redirect(w, r, "/firmware", http.StatusSeeOther)
		return
	}
	p := s.loadPage(r, viewOf("firmware"))
	failed(&p.page, "firmware-apply", err, map[string]string{"bundle": ""}, map[string]string{"": "bundle"})
	s.render(w, r, http.StatusUnprocessableEntity, "firmware", &p.page)
}

// withUpload runs fn with the path of the uploaded file of field.
func (s *Server) withUpload(r *http.Request, field string, fn func(path string) error) error {
	file, _, err := r.FormFile(field)
	if err != nil {
		return fieldError(field, "Choose the file to upload.")
	}
	defer file.Close()
	if f, ok := file.(*os.File); ok { // already on disk
		return fn(f.Name())
	}
	tmp, err := os.CreateTemp("", "concierge-upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, file)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return fn(tmp.Name())
}

// firmwareStop is the page's restart or power-off of the whole box (op
// reboot or poweroff), with the notice the admin sees.
func (s *Server) firmwareStop(op, what, notice string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), OpTimeout)
		defer cancel()
		if err := s.ctl.Call(ctx, op, nil, nil); err != nil {
			p := s.loadPage(r, viewOf("firmware"))
			p.Error = "The box cannot do a " + what + ": " + err.Error()
			s.render(w, r, http.StatusUnprocessableEntity, "firmware", &p.page)
			return
		}
		s.log.Info("web: "+what+" asked", "ip", clientIP(r))
		s.sessions.setNotice(sessionOf(r), notice)
		http.Redirect(w, r, "/firmware", http.StatusSeeOther)
	}
}
