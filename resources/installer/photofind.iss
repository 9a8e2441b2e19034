; Inno Setup 6 script: photofind-VERSION-windows-x64-setup.exe from dist\photofind\.
;
; On a Windows release machine (Python 3.11+ x64, Inno Setup 6 on PATH as iscc):
;     py -m venv .venv && .venv\Scripts\activate
;     pip install -e ".[dev]"
;     python resources\installer\build.py            (add --model DIR to ship ViT-B/32)
;     iscc /DAppVersion=0.1.0 resources\installer\photofind.iss
; Output: dist\photofind-0.1.0-windows-x64-setup.exe. Not run in this project's CI.
; Per-user install by default (no administrator prompt); the user may pick all users.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "photofind"
#define AppExe "photofind.exe"

[Setup]
; A fixed AppId keeps upgrades and uninstall working across versions: never change it.
AppId={{6A4C2E1B-3F57-4C8E-9B1D-7E2F5A90C3D4}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=photofind developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
SourceDir=..\..
OutputDir=dist
OutputBaseFilename=photofind-{#AppVersion}-windows-x64-setup
SetupIconFile=resources\installer\photofind.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole one-folder bundle: photofind.exe and _internal\ (Python, Qt, onnxruntime, models).
Source: "dist\photofind\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Find photos by what they show"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only what the program itself wrote beside its files; the user's library and installed
; models live in %LOCALAPPDATA%\photofind and are kept (the user's data, not ours).
Type: filesandordirs; Name: "{app}\_internal\__pycache__"
