; Inno Setup script for Slider Studio on Windows (per-user install: no administrator rights).
; Built by packaging/build.py after PyInstaller, which passes the defines below:
;   iscc /DAppVersion=0.1.0 /DSourceDir=build\bundle\sliderstudio /DIconFile=build\icons\sliderstudio.ico
;        /Odist packaging\windows\sliderstudio.iss
; Not run on the development machine (Linux); CI runs it on windows-latest (installers.yml).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\..\build\bundle\sliderstudio"
#endif
#ifndef IconFile
  #define IconFile "..\..\build\icons\sliderstudio.ico"
#endif

[Setup]
AppId={{6D1B5C9E-2F4A-4E39-9C1B-51A7D35F0C21}
AppName=Slider Studio
AppVersion={#AppVersion}
AppPublisher=Slider Studio
DefaultDirName={localappdata}\Programs\SliderStudio
DefaultGroupName=Slider Studio
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=SliderStudio-{#AppVersion}-windows-x64-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\Slider Studio.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesEnvironment=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"
Name: "addtopath"; Description: "Add the sliderstudio command to PATH"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Slider Studio"; Filename: "{app}\Slider Studio.exe"
Name: "{group}\Slider Studio demo (command line)"; Filename: "{cmd}"; Parameters: "/k ""{app}\sliderstudio.exe"" demo --workdir ""%USERPROFILE%\sliderstudio-demo"""
Name: "{group}\Install GPU runtime (NVIDIA)"; Filename: "{cmd}"; Parameters: "/k ""{app}\sliderstudio.exe"" runtime install"
Name: "{group}\Uninstall Slider Studio"; Filename: "{uninstallexe}"
Name: "{userdesktop}\Slider Studio"; Filename: "{app}\Slider Studio.exe"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\Slider Studio.exe"; Description: "{cm:LaunchProgram,Slider Studio}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; the GPU runtime lives in the user's data folder; removing the app removes it too
Type: filesandordirs; Name: "{localappdata}\SliderStudio\gpu-runtime"

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Current: string;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, 'Environment', 'Path', Current) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Current) + ';') = 0;
end;
